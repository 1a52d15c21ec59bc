"""The report: report.json contract, verdicts, comparisons, Markdown, HTML and JUnit."""

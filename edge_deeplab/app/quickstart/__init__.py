"""The quickstart pipeline: data, train, QAT, exports, analysis, accuracy, bench, report, demo (run.py)."""

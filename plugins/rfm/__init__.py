"""RFM: recency, frequency and monetary scores and segments, churn and value change,
computed with numpy over SQL aggregates. Its analytics arrive with the RFM issue."""

name = "rfm"
requires: tuple[str, ...] = ()

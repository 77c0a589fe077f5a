"""mentor: distil tool use from a large teacher into a small student with GRPO and a
teacher-guided dense reward (MENTOR, arXiv 2510.18383)."""

__version__ = "0.1.0"

"""The paper's final evaluation (section 4.1, appendix 6.1 (3)): a judge model compares two
fine-tuned models' answers to the same test questions; Our Wins / Ties / Our Losses.

pairwise.py judges each question in both orders, verdict.py reads a judge's answer, winrate.py
makes the table; ``python -m autodp.judge`` runs them on two answer files. The judge sees test
questions and answers only, never the training rows, and nothing here reaches the agent."""

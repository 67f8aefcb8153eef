"""Search methods, one file each, each chosen by conf/search/<method>.yaml (``proposer._target_``):
autodp (the paper's agent loop), fixed (No-process, All-process), random (RS), greedy
(LLM+greedy) and mcts (SELA-style tree search). A new method is a file here with a callable that
takes a ``Context`` and returns a ``Proposer``, plus its YAML; the loop does not change."""

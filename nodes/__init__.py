"""The graph's nodes: the two agents and the environment (setup, evaluator, verifier, reward, deliver)."""

"""The state machine: its vocabulary (state, messages, context), its rules (rewards, routing,
budget, persistence) and its assembly (`tandem.graph.assembly.build_graph`)."""

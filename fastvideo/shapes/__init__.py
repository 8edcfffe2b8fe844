"""The procedural shapes world: caption grammar, scene renderer and rule-based verifier."""

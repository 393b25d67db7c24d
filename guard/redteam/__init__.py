"""Offline red-team tools (the ``train``/``redteam`` extras): never imported by the daemon."""

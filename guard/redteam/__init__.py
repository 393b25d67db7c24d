"""Offline red-team tools (the ``train``/``redteam`` extras). Only ``commands`` (argparse) is
imported by the CLI at start-up; everything else is imported by ``guard lab`` when it runs."""

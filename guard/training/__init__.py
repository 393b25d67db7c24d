"""Offline training of the command classifier (the ``train`` extra: TensorFlow, soundfile).

Nothing here is imported by the daemon.
"""

"""Runtime detectors of backdoor triggers and adversarial perturbations."""

"""The contract both halves of Outrider share: event shapes and Kubernetes names. Imports nothing else of Outrider."""

"""The kopf operator: Run and Target CRDs, Job admission, circuit breakers, target health, autonomy."""

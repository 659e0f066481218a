"""Test support shipped with vactor_cloud: the backend conformance suite, emulator
lanes (moto, LocalStack, fake-gcs-server) and a pytest plugin with fixtures."""

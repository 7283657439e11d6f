"""Pure: the desired state -> file contents, TLS material and the deploy plan's variables."""

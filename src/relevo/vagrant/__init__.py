"""The seed's own environment from a topology: one Vagrant VM per node, each running its node's one LXD
container (`relevo export vagrant DIR`)."""

"""Pure builders, one module per kind of child: typed spec in, manifest dict out."""

"""Pictures of runs and data: loss curves, previews, attention maps."""

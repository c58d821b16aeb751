"""Host-side programs that embed the console like any service would (the demo)."""

"""Where downloaded media files live."""

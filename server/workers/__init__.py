"""Background work each process runs beside the API: the fallback poller and the media downloader."""

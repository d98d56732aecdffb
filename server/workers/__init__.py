"""Background work: the fallback poller, the media downloader, and `darkroom worker`, the process running them alone."""

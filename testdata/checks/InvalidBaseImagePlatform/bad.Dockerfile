FROM busybox-arm64

FROM alpine
EXPOSE 80/tcp 81

FROM alpine
WORKDIR app
FROM alpine
WORKDIR C:/app

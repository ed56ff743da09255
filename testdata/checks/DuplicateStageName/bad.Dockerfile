FROM alpine AS b
FROM alpine AS b

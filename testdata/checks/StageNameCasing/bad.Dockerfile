FROM alpine AS Build

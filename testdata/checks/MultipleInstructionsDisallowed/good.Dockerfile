FROM alpine
CMD ["b"]

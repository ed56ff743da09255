FROM alpine
run true
RUN true

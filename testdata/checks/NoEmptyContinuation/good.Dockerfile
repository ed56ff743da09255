FROM scratch
COPY Dockerfile \
.


FROM scratch
# c
COPY Dockerfile \

.
COPY Dockerfile \
.

FROM scratch
COPY app/ /app/
COPY . /src
COPY --from=alpine Dockerfile /

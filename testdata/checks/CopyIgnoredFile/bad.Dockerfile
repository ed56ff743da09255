FROM scratch
COPY Dockerfile .
ADD Dockerfile /windy
COPY secrets/key.pem ./app/ /

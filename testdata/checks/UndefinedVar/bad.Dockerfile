FROM alpine
COPY $foo .
ARG foo=bar
RUN echo $foo
ARG DIR_BINARIES=binaries/
ARG DIR_ASSETS=assets/
COPY $DIR_ASSET .
ENV PATH=$PAHT:/tmp/bin

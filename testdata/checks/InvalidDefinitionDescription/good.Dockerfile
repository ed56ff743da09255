# check=skip=all;experimental=InvalidDefinitionDescription
# foo this is the foo
ARG foo=bar
# base this is the base image
FROM scratch AS base
# version this is the version number
ARG version=latest
# baz this is the baz
ARG foo=baz bar=qux baz=quux
#
ARG bit=bat
# comment for something other than ARG or FROM
COPY Dockerfile .

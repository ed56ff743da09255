FROM alpine as build

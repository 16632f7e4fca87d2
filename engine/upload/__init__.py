"""Uploading: the uploader, the server's answers, the connection test."""

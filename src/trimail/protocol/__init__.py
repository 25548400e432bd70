"""The sans-I/O SMTP core: bytes in, typed events out; typed replies in, bytes out.

Nothing in this package may import trio, touch a socket, a clock or a file.
"""

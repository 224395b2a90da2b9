"""Exit 0 but print prose instead of a token."""

from _count import count

count()
print("Welcome to ACME SSO!")
print("Your session is ready. Have a nice day.")

"""The fault-injection suite: bad inputs and interruptions, each with the outcome a user must get."""

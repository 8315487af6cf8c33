"""Small helpers with no dependency on the rest of vidprior (complexity accounting, environment report)."""

"""The seeds' e-commerce order pipeline on rediq: inventory -> payment -> sms + shipping."""

"""MCEP: the Multi-Channel Client Engagement Platform."""

"""The applying side: RQ jobs that turn CRM events into GraphQL mutations on the platform."""

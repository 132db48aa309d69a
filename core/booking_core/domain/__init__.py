"""The pure domain of pat-booking-be: values, rules and state machines, no framework imports.

Modules: clinics, slots, bookings (FHIR Appointment statuses), holds, patients (tiers), catalogue,
results (FHIR DiagnosticReport/Observation), recommendations, notifications, errors.
"""

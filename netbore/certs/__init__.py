"""
Certificates for a private or test netbore setup, on C{cryptography}
(C{python -m netbore.certs}):

 - L{netbore.certs.build}: a CA, a server certificate for a tunnel domain
   and its wildcard, agent client certificates naming an account;
 - L{netbore.certs.files}: their PEM files, written 0600 when they hold a
   key, never replacing a file unless asked to;
 - L{netbore.certs.cli}: the command.
"""

"""epcsim: an executable model of the Intel SGX Enclave Page Cache memory manager."""

__version__ = "0.1.0"

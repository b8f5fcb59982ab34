"""present/cli"""

"""present/api"""

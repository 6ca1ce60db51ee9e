@echo off
rem receive.cmd RELAY CODE DIR -- ferry's receive on Windows, from a clone (README: Quick start).
rem scripts\windows-client.cmd makes .venv on the first run, then runs ferry in it.
call "%~dp0scripts\windows-client.cmd" receive %*
exit /b %ERRORLEVEL%

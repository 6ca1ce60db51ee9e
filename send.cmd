@echo off
rem send.cmd RELAY FILE -- ferry's send on Windows, from a clone (README: Quick start).
rem scripts\windows-client.cmd makes .venv on the first run, then runs ferry in it.
call "%~dp0scripts\windows-client.cmd" send %*
exit /b %ERRORLEVEL%

@echo off
rem Shared body of send.cmd and receive.cmd, the Windows counterpart of scripts/run-client:
rem make sure .venv holds requirements\runtime.txt (pinned, sha256 hashes, wheels only),
rem made with the py launcher's Python 3 (3.11 or newer), then run ferry from src\ in it.
rem .venv is fresh when it keeps a byte-identical copy of the lock (fc /b), written last.
rem Messages go to stderr; exit code 11 when .venv cannot be set up (README, exit codes).
setlocal
set "ROOT=%~dp0.."
set "VENV=%ROOT%\.venv"
set "LOCK=%ROOT%\requirements\runtime.txt"
fc /b "%LOCK%" "%VENV%\ferry-lock.txt" >nul 2>&1
if not errorlevel 1 goto run
>&2 echo ferry: setting up .venv from requirements\runtime.txt
if exist "%VENV%" rmdir /s /q "%VENV%"
py -3 -c "import sys; sys.exit(sys.version_info < (3, 11))" >nul 2>&1
if errorlevel 1 (
  >&2 echo ferry: needs Python 3.11 or newer with the py launcher, from python.org
  exit /b 11
)
py -3 -m venv "%VENV%"
if errorlevel 1 exit /b 11
"%VENV%\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check --no-input --require-hashes --only-binary :all: -r "%LOCK%"
if errorlevel 1 (
  >&2 echo ferry: could not install requirements\runtime.txt; is the package index reachable?
  exit /b 11
)
copy /y "%LOCK%" "%VENV%\ferry-lock.txt" >nul
:run
set "PYTHONPATH=%ROOT%\src"
"%VENV%\Scripts\python.exe" -m ferry.cli.main %*
exit /b %ERRORLEVEL%

# NativeVlm build entry point for Windows (PowerShell 7+). Same verbs as build.sh:
#   ./build.ps1 test | demo | native
# Needs CMake, a C++17 compiler (MSVC), the .NET 10 SDK; OpenBLAS and the CUDA toolkit are used when
# CMake finds them (the CPU backend falls back to its own GEMM without OpenBLAS).
param([Parameter(Mandatory = $true)][ValidateSet('test', 'demo', 'native')][string]$Verb,
      [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = 'Stop'
$Root = $PSScriptRoot
$Configuration = if ($env:CONFIGURATION) { $env:CONFIGURATION } else { 'Release' }

function Invoke-Checked([scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "failed ($LASTEXITCODE): $Command" }
}

function Build-Native {
    $cuda = if ($env:NVLM_NO_CUDA -eq '1') { 'OFF' } else { 'ON' }
    Invoke-Checked { cmake -S $Root -B "$Root/build/native" -DNVLM_CUDA=$cuda }
    Invoke-Checked { cmake --build "$Root/build/native" --config $Configuration --parallel }
    # Multi-config generators put the DLL under a configuration folder; the C# side looks in build/native.
    $dll = Get-ChildItem "$Root/build/native" -Recurse -Filter nvlm.dll | Select-Object -First 1
    if ($dll -and $dll.DirectoryName -ne (Resolve-Path "$Root/build/native").Path) {
        Copy-Item $dll.FullName "$Root/build/native/nvlm.dll" -Force
    }
}

function Build-Managed { Invoke-Checked { dotnet build "$Root/NativeVlm.sln" -c $Configuration -nologo -v quiet } }

switch ($Verb) {
    'native' { Build-Native }
    'test' {
        Build-Native; Build-Managed
        Invoke-Checked { dotnet test "$Root/NativeVlm.sln" -c $Configuration --no-build -nologo `
            --logger 'trx;LogFileName=results.trx' --results-directory "$Root/build/test-results" }
    }
    'demo' {
        Build-Native; Build-Managed
        Invoke-Checked { dotnet "$Root/src/NativeVlm.Cli/bin/$Configuration/net10.0/nativevlm.dll" demo @Rest }
    }
}

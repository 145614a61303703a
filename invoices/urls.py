from django.urls import path

from invoices import views

app_name = "invoices"
urlpatterns = [
    path("invoices/", views.invoice_list, name="list"),
    path("invoices/export.csv", views.export_csv, name="export_csv"),
    path("invoices/download.zip", views.download_zip, name="download_zip"),
    path("invoices/<int:pk>/", views.invoice_detail, name="detail"),
    path("invoices/<int:pk>/pay/", views.pay, name="pay"),
    path("credit-notes/<int:pk>/", views.credit_note_detail, name="credit_note_detail"),
    path("invoices/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("invoices/<int:pk>/ubl/", views.invoice_ubl, name="invoice_ubl"),
    path("credit-notes/<int:pk>/pdf/", views.credit_note_pdf, name="credit_note_pdf"),
    path("statement/", views.statement, name="statement"),
    path("d/<str:token>/", views.document_link, name="document_link"),
    path("d/<str:token>/pdf/", views.document_link_pdf, name="document_link_pdf"),
]
